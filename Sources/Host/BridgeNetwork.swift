import Foundation

/// A container network as Docker's default bridge makes it (Felter et al., IBM 2014, measured
/// containers on it beside host networking): a network namespace whose `eth0` is one end of a
/// veth pair, the other end on a bridge of its own with the gateway address; the container's
/// traffic out masqueraded, and published ports reached through DNAT to the container's address.
///
/// ```
/// host: imgbN (bridge, 10.213.N.1/24) ── imgbN-h ══ veth ══ eth0 (10.213.N.2/24): namespace imgbench-N
///       iptables -t nat: POSTROUTING -s 10.213.N.0/24 ! -o imgbN -j MASQUERADE
///                        OUTPUT -d 10.213.N.1 -p tcp|udp --dport P -j DNAT --to 10.213.N.2:P
/// ```
///
/// A client on the host connects to `gatewayAddress:P`: the packets go through the nat table's
/// DNAT (conntrack), the bridge and the veth pair, as a published port's do. Everything is
/// removed by `remove()`, which a Ctrl-C also runs: every rule (each carries the comment
/// `imgbench-N`), the interfaces, the namespace, and `ip_forward` as it was.
public final class BridgeNetwork: @unchecked Sendable {
    public enum PortProtocol: String, Sendable { case tcp, udp }

    /// The namespace's name (`ip netns`), and its file, for a runtime's `linux.namespaces`.
    public let namespace: String
    public var namespacePath: String { "/var/run/netns/\(namespace)" }
    public let gatewayAddress: String
    public let containerAddress: String
    let subnet: String
    let bridge: String
    let hostEnd: String
    let comment: String
    var rules: [[String]] = []
    var forwardingWas: String?
    var cleanup: Int?
    let lock = NSLock()
    var removed = false

    static let forwardingPath = "/proc/sys/net/ipv4/ip_forward"

    /// Sets the network up with `ports` published; on a failure, what was made is removed and
    /// the error names the step.
    public init(publishing ports: [(Int, PortProtocol)]) throws {
        let n = try Self.freeSubnet()
        namespace = "imgbench-\(n)"
        bridge = "imgb\(n)"
        hostEnd = "imgb\(n)-h"
        comment = "imgbench-\(n)"
        subnet = "10.213.\(n).0/24"
        gatewayAddress = "10.213.\(n).1"
        containerAddress = "10.213.\(n).2"
        cleanup = Cleanup.register("remove the bridge network \(namespace)") { [unowned self] in self.remove() }
        do {
            try make(ports)
        } catch {
            remove()
            throw error
        }
    }

    func make(_ ports: [(Int, PortProtocol)]) throws {
        try ip("add the namespace", ["netns", "add", namespace])
        try ip("add the bridge", ["link", "add", bridge, "type", "bridge"])
        try ip("address the bridge", ["addr", "add", "\(gatewayAddress)/24", "dev", bridge])
        try ip("bring the bridge up", ["link", "set", bridge, "up"])
        try ip("add the veth pair", ["link", "add", hostEnd, "type", "veth", "peer", "name", "\(bridge)-c"])
        try ip("attach the veth to the bridge", ["link", "set", hostEnd, "master", bridge, "up"])
        try ip("move the veth into the namespace", ["link", "set", "\(bridge)-c", "netns", namespace])
        let inside = ["netns", "exec", namespace, "ip"]
        try ip("name the container's end eth0", inside + ["link", "set", "\(bridge)-c", "name", "eth0"])
        try ip("address eth0", inside + ["addr", "add", "\(containerAddress)/24", "dev", "eth0"])
        try ip("bring eth0 up", inside + ["link", "set", "eth0", "up"])
        try ip("bring lo up", inside + ["link", "set", "lo", "up"])
        try ip("route through the bridge", inside + ["route", "add", "default", "via", gatewayAddress])
        forwardingWas = (try? String(contentsOfFile: Self.forwardingPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        if forwardingWas != "1" { try write("1", to: Self.forwardingPath) }
        try rule(["-t", "nat", "-A", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"])
        for (port, proto) in ports {
            try rule(["-t", "nat", "-A", "OUTPUT", "-d", gatewayAddress, "-p", proto.rawValue, "--dport", "\(port)",
                      "-j", "DNAT", "--to-destination", "\(containerAddress):\(port)"])
        }
    }

    /// Removes everything `init` made (idempotent; what is already gone is skipped).
    public func remove() {
        let first = lock.withLock { () -> Bool in
            defer { removed = true }
            return !removed
        }
        guard first else { return }
        for r in rules.reversed() {
            var delete = r
            if let i = delete.firstIndex(of: "-A") { delete[i] = "-D" }
            _ = try? Command.run(["iptables"] + delete + ["-m", "comment", "--comment", comment], timeout: 30)
        }
        _ = try? Command.run(["ip", "link", "del", hostEnd], timeout: 30)
        _ = try? Command.run(["ip", "link", "del", bridge], timeout: 30)
        _ = try? Command.run(["ip", "netns", "del", namespace], timeout: 30)
        if let was = forwardingWas, was != "1" { try? write(was, to: Self.forwardingPath) }
        if let id = cleanup { Cleanup.unregister(id) }
    }

    deinit { remove() }

    func ip(_ what: String, _ args: [String]) throws {
        try Command.check("bridge network \(namespace): \(what)", ["ip"] + args, timeout: 30)
    }

    func rule(_ args: [String]) throws {
        try Command.check("bridge network \(namespace): iptables \(args.joined(separator: " "))",
                          ["iptables"] + args + ["-m", "comment", "--comment", comment], timeout: 30)
        rules.append(args)
    }

    func write(_ value: String, to path: String) throws {
        do { try (value + "\n").write(toFile: path, atomically: false, encoding: .utf8) } catch {
            throw HostError.io(path: path, message: "cannot write \(value): \(error)")
        }
    }

    /// A third octet N for 10.213.N.0/24 that no interface address and no namespace of ours uses.
    static func freeSubnet() throws -> Int {
        let addresses = (try? Command.check("list the host's addresses", ["ip", "-o", "-4", "addr", "show"], timeout: 30)) ?? ""
        let namespaces = (try? Command.check("list network namespaces", ["ip", "netns", "list"], timeout: 30)) ?? ""
        let start = Int(getpid()) % 250
        for i in 0..<250 {
            let n = (start + i) % 250 + 1
            if !addresses.contains("10.213.\(n).") && !namespaces.contains("imgbench-\(n)") { return n }
        }
        throw HostError.io(path: "10.213.0.0/16", message: "no free /24 for a bridge network")
    }

    /// The interfaces, namespaces and nat rules of bridge networks left on this host (none when
    /// everything was removed): for tests and `imgbench run`'s check that nothing was left.
    public static func leftovers() -> [String] {
        var found: [String] = []
        if let links = try? Command.check("list links", ["ip", "-o", "link", "show"], timeout: 30) {
            found += links.split(separator: "\n").compactMap { l in
                l.split(separator: ":").dropFirst().first.map { $0.trimmingCharacters(in: .whitespaces) }
            }.filter { $0.hasPrefix("imgb") }
        }
        if let ns = try? Command.check("list network namespaces", ["ip", "netns", "list"], timeout: 30) {
            found += ns.split(separator: "\n").map(String.init).filter { $0.hasPrefix("imgbench-") }
        }
        if let nat = try? Command.check("list nat rules", ["iptables", "-t", "nat", "-S"], timeout: 30) {
            found += nat.split(separator: "\n").map(String.init).filter { $0.contains("imgbench-") }
        }
        return found
    }
}
