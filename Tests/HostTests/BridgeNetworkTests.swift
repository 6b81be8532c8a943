import Foundation
@testable import Host
import Testing
import TestSupport

// The container bridge network of `imgbench run --container-network bridge` (Felter et al.'s
// NAT set-up): traffic reaches a server in the namespace through DNAT, and nothing is left on the
// host after it is removed, or after a set-up that failed half-way.

@Suite(.serialized) struct BridgeNetworkTests {
    @Test("a server in the namespace answers through the DNAT of its port; removal leaves nothing (root)",
          .enabled(if: isRoot, "network namespaces and iptables need root"))
    func publishedPortAnswersAndNothingIsLeft() throws {
        let before = BridgeNetwork.leftovers()
        let port = 47_000 + Int(getpid() % 1000)
        let net = try BridgeNetwork(publishing: [(port, .tcp)])
        #expect(FileManager.default.fileExists(atPath: net.namespacePath))
        let nat = try Command.check("nat rules", ["iptables", "-t", "nat", "-S"])
        #expect(nat.contains("--to-destination \(net.containerAddress):\(port)") && nat.contains("MASQUERADE"), "\(nat)")
        // A one-shot server inside (python3's socket), the client on the host at the gateway.
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/ip")
        server.arguments = ["netns", "exec", net.namespace, "python3", "-c", """
            import socket
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", \(port))); s.listen(1)
            c, a = s.accept(); c.sendall(("from " + a[0]).encode()); c.close()
            """]
        try server.run()
        defer { if server.isRunning { server.terminate() } }
        var answer = ""
        for _ in 0..<50 where answer.isEmpty {
            answer = (try? sh("python3 -c 'import socket; s = socket.create_connection((\"\(net.gatewayAddress)\", \(port)), 2); print(s.recv(100).decode())'").output) ?? ""
            if !answer.hasPrefix("from") { answer = ""; usleep(100_000) }
        }
        if answer.isEmpty { server.terminate() }
        server.waitUntilExit()
        // The server saw the host through the bridge: the gateway's address, not loopback.
        #expect(answer.hasPrefix("from \(net.gatewayAddress)"), "\(answer)")
        net.remove()
        #expect(BridgeNetwork.leftovers() == before, "\(BridgeNetwork.leftovers())")
    }

    @Test("a set-up that fails half-way removes what it made (root)", .enabled(if: isRoot, "network namespaces and iptables need root"))
    func failedSetUpLeavesNothing() throws {
        let before = BridgeNetwork.leftovers()
        #expect(throws: HostError.self) { _ = try BridgeNetwork(publishing: [(70_000, .tcp)]) }
        #expect(BridgeNetwork.leftovers() == before, "\(BridgeNetwork.leftovers())")
    }
}
