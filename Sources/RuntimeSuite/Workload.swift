import Foundation
import RecipePlan

/// One workload of the runtime benchmark suite: the same shell script runs natively, in the
/// container and in the VM (with the tools Debian packages), and its figures are parsed from the
/// tool's own output.
///
/// Two shapes:
/// - `inside`: the script runs the benchmark and prints its output (sysbench, fio, hpcc);
/// - `server`: the script starts a server and says when it is ready; a client on the host drives
///   it through the network (MariaDB with sysbench oltp, redis-server with redis-benchmark, iperf3),
///   as Felter et al. (IBM 2014) measured them, and the figures are the client's.
///
/// Scripts see `W` (a writable work folder), `T` (threads: the run's CPU count), `D` (seconds),
/// `P` (the port a server listens on), for a server with a data connection of its own `Q` (its
/// data port), and `R` (a folder on the image's root filesystem: copy-on-write in the container,
/// the disk in the VM, the host's filesystem natively), and run as root.
public struct Workload: Sendable {
    public enum Shape: Sendable, Equatable {
        case inside
        /// A server: `readyLine` appears in `$W/server.log` once it accepts connections.
        case server(readyLine: String)
    }

    public var name: String
    public var summary: String
    /// Programs the image must carry (checked with `command -v` inside, before anything runs).
    public var tools: [String]
    public var shape: Shape
    /// The figures, in the order the table shows them.
    public var figures: [FigureSpec]
    /// Said in every result of this workload: what the figures are and are not.
    public var notes: [String] = []
    /// The script body, given the run's parameters.
    var body: @Sendable (WorkloadParameters) -> String
    /// Server workloads: the client, run on the host against `host` at the server's ports.
    var client: (@Sendable (WorkloadParameters, _ host: String, _ ports: ServerPorts) -> [String])?
    /// A server that also takes a data connection on a port of its own (`Q`), and over which
    /// protocols (the VM forwards it as well).
    var dataPort: DataPort? = nil
    /// Whether the workload writes into the image's root filesystem (`$R`): the container then
    /// runs on a copy-on-write overlay of its rootfs rather than on the rootfs read-only.
    var writesRoot = false
    /// Programs the host needs for the client (a server workload) beyond the native run's tools.
    var clientTools: [String] = []
    /// The figures from the output (the script's for `inside`, the client's for `server`).
    var parse: @Sendable (String) throws -> [Figure]

    public static func named(_ name: String) -> Workload? { all.first { $0.name == name } }

    /// Checks the workloads a recipe declares (`# workloads=`): each unknown name is refused at
    /// its place in the recipe. The parser cannot see the suite, so the command line asks here.
    public static func validate(_ recipe: Recipe) throws {
        for w in recipe.declaredWorkloads where named(w.name) == nil {
            throw RecipeError(w.location, "unknown workload '\(w.name)' in workloads= (known: \(all.map(\.name).joined(separator: ", ")))")
        }
    }

    public var isServer: Bool { if case .server = shape { return true } else { return false } }
}

/// The ports a server workload listens on: `P`, and `Q` for its data connection.
public struct ServerPorts: Sendable, Equatable {
    public var control: Int
    public var data: Int?

    public init(control: Int, data: Int? = nil) {
        self.control = control
        self.data = data
    }
}

/// What a server's data port carries.
public enum DataPort: Sendable, Equatable {
    case tcp
    case tcpAndUDP
}

public struct WorkloadParameters: Sendable, Equatable {
    public var cpus: Int
    public var memoryBytes: UInt64
    public var durationSeconds: Int

    public init(cpus: Int, memoryBytes: UInt64, durationSeconds: Int) {
        self.cpus = cpus
        self.memoryBytes = memoryBytes
        self.durationSeconds = durationSeconds
    }
}

public struct FigureSpec: Codable, Equatable, Sendable {
    public var name: String
    public var unit: String
    public var higherIsBetter = true
}

public struct Figure: Codable, Equatable, Sendable {
    public var name: String
    public var unit: String
    /// The figure; over several rounds (--repeat), their median.
    public var value: Double
    /// Every round's value, when there were several.
    public var samples: [Double]?

    public init(name: String, unit: String, value: Double, samples: [Double]? = nil) {
        self.name = name
        self.unit = unit
        self.value = value
        self.samples = samples
    }
}

/// A tool's output that does not hold the figure it should.
public struct FigureError: Error, Equatable, Sendable, CustomStringConvertible {
    public var tool: String
    public var message: String
    public var description: String { "\(tool) output: \(message)" }
}

extension Workload {
    /// The suite, from Felter et al. (IBM 2014): sysbench cpu and memory, fio random read/write with 8 KiB blocks
    /// (the filebench randomrw shape), sysbench oltp against MariaDB, redis-benchmark against
    /// redis-server, hpcc's STREAM, RandomAccess and HPL, and from the host iperf3, nuttcp (the
    /// paper's bandwidth tool) and qperf's TCP and UDP latency (for netperf's TCP_RR).
    public static let all: [Workload] = [
        Workload(
            name: "sysbench-cpu", summary: "sysbench cpu: prime numbers up to 10000, one thread per CPU",
            tools: ["sysbench"], shape: .inside,
            figures: [FigureSpec(name: "events/s", unit: "events/s")],
            body: { _ in #"sysbench cpu --threads="$T" --time="$D" run"# },
            parse: { [Figure(name: "events/s", unit: "events/s", value: try Figures.sysbenchCPU($0))] }),
        Workload(
            name: "sysbench-memory", summary: "sysbench memory: sequential writes in 1 MiB blocks, one thread per CPU",
            tools: ["sysbench"], shape: .inside,
            figures: [FigureSpec(name: "MiB/s", unit: "MiB/s")],
            body: { _ in #"sysbench memory --threads="$T" --time="$D" --memory-block-size=1M --memory-total-size=1024T run"# },
            parse: { [Figure(name: "MiB/s", unit: "MiB/s", value: try Figures.sysbenchMemory($0))] }),
        Workload(
            name: "fio-randrw", summary: "fio: 50/50 random reads and writes, 8 KiB blocks, direct I/O, on a 128 MiB file in the root's filesystem",
            tools: ["fio"], shape: .inside,
            figures: [FigureSpec(name: "read IOPS", unit: "IOPS"), FigureSpec(name: "write IOPS", unit: "IOPS")],
            notes: ["the file is on the host's filesystem natively and in the container (a folder beside the bundle, bind-mounted), and on the qcow2 disk (a snapshot overlay, host page cache on) in the VM"],
            body: { _ in
                #"fio --name=randrw --directory="$W" --rw=randrw --rwmixread=50 --bs=8k --size=128M --direct=1 --ioengine=psync --numjobs="$T" --group_reporting --time_based --runtime="$D" --output-format=json"#
            },
            parse: { out in
                let f = try Figures.fio(out)
                return [Figure(name: "read IOPS", unit: "IOPS", value: f.readIOPS), Figure(name: "write IOPS", unit: "IOPS", value: f.writeIOPS)]
            }),
        oltp(name: "sysbench-oltp", data: "$W/db",
             summary: "sysbench oltp_read_write from the host against MariaDB in the image (1 table of 10000 rows), its data folder on a volume",
             note: "the data folder is on the host's filesystem natively, on a bind-mounted volume in the container (a folder beside the bundle), and on the qcow2 disk in the VM"),
        oltp(name: "sysbench-oltp-root", data: "$R/db",
             summary: "sysbench oltp_read_write as sysbench-oltp, the data folder on the image's copy-on-write root (Felter et al.'s MySQL on the container's storage driver)",
             note: "the data folder is on the host's filesystem natively, on the container's root (an overlay, copy-on-write, over the image's rootfs) and on the qcow2 disk in the VM",
             writesRoot: true),
        Workload(
            name: "redis", summary: "redis-benchmark from the host against redis-server in the image: SET and GET, 10 connections",
            tools: ["redis-server"], shape: .server(readyLine: "Ready to accept connections"),
            figures: [FigureSpec(name: "SET/s", unit: "requests/s"), FigureSpec(name: "GET/s", unit: "requests/s")],
            notes: [clientNote("redis-benchmark"), "4000 requests per second of --duration per test"],
            body: { _ in
                #"""
                redis-server --port "$P" --bind 0.0.0.0 --protected-mode no --save '' --appendonly no --dir "$W" > "$W/server.log" 2>&1 &
                """#
            },
            client: { p, host, ports in
                ["redis-benchmark", "-h", host, "-p", "\(ports.control)", "--csv", "-t", "set,get", "-c", "10", "-n", "\(4000 * max(1, p.durationSeconds))"]
            },
            clientTools: ["redis-benchmark"],
            parse: { out in
                let f = try Figures.redisBenchmark(out)
                guard let set = f["SET"], let get = f["GET"] else {
                    throw FigureError(tool: "redis-benchmark", message: "no SET and GET rows in its CSV")
                }
                return [Figure(name: "SET/s", unit: "requests/s", value: set), Figure(name: "GET/s", unit: "requests/s", value: get)]
            }),
        Workload(
            name: "hpcc", summary: "HPC Challenge, one MPI process: STREAM Triad, RandomAccess and HPL with N=2000",
            tools: ["hpcc"], shape: .inside,
            figures: [FigureSpec(name: "STREAM Triad", unit: "GB/s"), FigureSpec(name: "RandomAccess", unit: "GUP/s"),
                      FigureSpec(name: "HPL", unit: "GFLOP/s")],
            notes: ["one MPI process (no mpirun), whatever --cpus says; HPL N=2000 (a 32 MB matrix), so STREAM's arrays are small and caches help; --duration does not apply"],
            body: { _ in
                #"""
                cd "$W"
                cat > hpccinf.txt <<'HPCC'
                HPLinpack benchmark input file
                imgbench: one process, a small problem
                HPL.out      output file name (if any)
                8            device out (6=stdout,7=stderr,file)
                1            # of problems sizes (N)
                2000         Ns
                1            # of NBs
                80           NBs
                0            PMAP process mapping (0=Row-,1=Column-major)
                1            # of process grids (P x Q)
                1            Ps
                1            Qs
                16.0         threshold
                1            # of panel fact
                2            PFACTs (0=left, 1=Crout, 2=Right)
                1            # of recursive stopping criterium
                4            NBMINs (>= 1)
                1            # of panels in recursion
                2            NDIVs
                1            # of recursive panel fact.
                1            RFACTs (0=left, 1=Crout, 2=Right)
                1            # of broadcast
                1            BCASTs (0=1rg,1=1rM,2=2rg,3=2rM,4=Lng,5=LnM)
                1            # of lookahead depth
                1            DEPTHs (>=0)
                2            SWAP (0=bin-exch,1=long,2=mix)
                64           swapping threshold
                0            L1 in (0=transposed,1=no-transposed) form
                0            U  in (0=transposed,1=no-transposed) form
                1            Equilibration (0=no,1=yes)
                8            memory alignment in double (> 0)
                ##### This line (no. 32) is ignored (it serves as a separator). ######
                0                      		Number of additional problem sizes for PTRANS
                1200 10000 30000        	values of N
                0                       	number of additional blocking sizes for PTRANS
                40 9 8 13 13 20 16 32 64       	values of NB
                HPCC
                OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm=isolated OMPI_MCA_btl_vader_single_copy_mechanism=none \
                  hpcc > hpcc.log 2>&1 || { tail -20 hpcc.log; exit 1; }
                sed -n '/Begin of Summary section/,/End of Summary section/p' hpccoutf.txt
                """#
            },
            parse: { out in
                let f = try Figures.hpcc(out)
                return [Figure(name: "STREAM Triad", unit: "GB/s", value: f.streamTriadGBs),
                        Figure(name: "RandomAccess", unit: "GUP/s", value: f.randomAccessGUPs),
                        Figure(name: "HPL", unit: "GFLOP/s", value: f.hplGFLOPs)]
            }),
        Workload(
            name: "iperf3", summary: "iperf3: a TCP stream from a client on the host to the server in the image",
            tools: ["iperf3"], shape: .server(readyLine: "Server listening"),
            figures: [FigureSpec(name: "received", unit: "Gbit/s")],
            notes: [clientNote("iperf3 -c")],
            body: { _ in #"iperf3 -s -p "$P" -1 --forceflush > "$W/server.log" 2>&1 &"# },
            client: { p, host, ports in ["iperf3", "-c", host, "-p", "\(ports.control)", "-t", "\(max(1, p.durationSeconds))", "-J"] },
            clientTools: ["iperf3"],
            parse: { out in [Figure(name: "received", unit: "Gbit/s", value: try Figures.iperf3(out) / 1e9)] }),
        Workload(
            name: "nuttcp", summary: "nuttcp: a TCP stream from a client on the host to the server in the image (the bandwidth tool of Felter et al.)",
            tools: ["nuttcp"], shape: .server(readyLine: listeningLine),
            figures: [FigureSpec(name: "received", unit: "Gbit/s")],
            notes: [clientNote("nuttcp -t")],
            body: { _ in listening + #"nuttcp -1 --nofork -P "$P" -p "$Q" >> "$W/server.log" 2>&1 &"# },
            client: { p, host, ports in
                ["nuttcp", "-t", "-P", "\(ports.control)", "-p", "\(ports.data ?? ports.control + 1)", "-T", "\(max(1, p.durationSeconds))", "-fparse", host]
            },
            dataPort: .tcp,
            clientTools: ["nuttcp"],
            parse: { out in [Figure(name: "received", unit: "Gbit/s", value: try Figures.nuttcp(out) / 1e3)] }),
        Workload(
            name: "qperf", summary: "qperf tcp_lat and udp_lat: one-byte round trips from a client on the host to the server in the image (the nearest packaged tool to netperf's TCP_RR, which Felter et al. used)",
            tools: ["qperf"], shape: .server(readyLine: listeningLine),
            figures: [FigureSpec(name: "TCP latency", unit: "us", higherIsBetter: false), FigureSpec(name: "UDP latency", unit: "us", higherIsBetter: false)],
            notes: [clientNote("qperf tcp_lat udp_lat"), "half a round trip, as qperf reports latency; lower is better"],
            body: { _ in listening + #"qperf -lp "$P" >> "$W/server.log" 2>&1 &"# },
            client: { p, host, ports in
                ["qperf", "-lp", "\(ports.control)", "-ip", "\(ports.data ?? ports.control + 1)", "-t", "\(max(1, p.durationSeconds))", host, "tcp_lat", "udp_lat"]
            },
            dataPort: .tcpAndUDP,
            clientTools: ["qperf"],
            parse: { out in
                let l = try Figures.qperf(out)
                guard let tcp = l["tcp_lat"], let udp = l["udp_lat"] else {
                    throw FigureError(tool: "qperf", message: "no latency for tcp_lat and udp_lat")
                }
                return [Figure(name: "TCP latency", unit: "us", value: tcp * 1e6), Figure(name: "UDP latency", unit: "us", value: udp * 1e6)]
            }),
    ]

    /// sysbench oltp_read_write against MariaDB with its data folder at `data` (`$W/db`: the
    /// work folder, a volume in the container; `$R/db`: the image's root filesystem).
    static func oltp(name: String, data: String, summary: String, note: String, writesRoot: Bool = false) -> Workload {
        var w = Workload(
            name: name, summary: summary,
            tools: ["mariadbd"], shape: .server(readyLine: "ready for connections"),
            figures: [FigureSpec(name: "transactions/s", unit: "tps"), FigureSpec(name: "queries/s", unit: "qps")],
            notes: [clientNote("sysbench"), note],
            body: { _ in
                // A copy of the image's data folder, so the image is not changed; no config files
                // (--no-defaults), so every side runs the same settings.
                """
                mkdir -p "\(data)" "$W/run"
                cp -a --sparse=always /var/lib/mysql/. "\(data)/"
                cat > "$W/init.sql" <<'SQL'
                CREATE DATABASE IF NOT EXISTS imgbench;
                CREATE USER IF NOT EXISTS 'bench'@'%' IDENTIFIED BY 'bench';
                GRANT ALL PRIVILEGES ON imgbench.* TO 'bench'@'%';
                SQL
                mariadbd --no-defaults --user=root --datadir="\(data)" --socket="$W/run/mysqld.sock" --pid-file="$W/run/mysqld.pid" \\
                  --port="$P" --bind-address=0.0.0.0 --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=128M \\
                  --init-file="$W/init.sql" > "$W/server.log" 2>&1 &
                """
            },
            client: { p, host, ports in
                let common = "--db-driver=mysql --mysql-host=\(host) --mysql-port=\(ports.control) --mysql-user=bench --mysql-password=bench --mysql-db=imgbench --tables=1 --table-size=10000 --threads=\(p.cpus)"
                return ["/bin/sh", "-c", "sysbench oltp_read_write \(common) prepare >/dev/null && sysbench oltp_read_write \(common) --time=\(p.durationSeconds) --report-interval=0 run"]
            },
            clientTools: ["sysbench"],
            parse: { out in
                let f = try Figures.sysbenchOLTP(out)
                return [Figure(name: "transactions/s", unit: "tps", value: f.transactions), Figure(name: "queries/s", unit: "qps", value: f.queries)]
            })
        w.writesRoot = writesRoot
        return w
    }

    /// What `listening` adds to the server's log once the port is open.
    static let listeningLine = "imgbench: the server listens"

    /// A shell snippet for a server that says nothing when it is ready: in the background, waits
    /// until a socket listens on the port `$P` (/proc/net/tcp and tcp6, state 0A), then writes
    /// `listeningLine` into the server's log. Put before the server's own line, whose process
    /// must be the script's last background job.
    static let listening = """
        ( h=$(printf '%04X' "$P")
          until grep -qE ":$h [0-9A-F]+:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null; do sleep 0.1; done
          echo "\(listeningLine)" >> "$W/server.log" ) &

        """
}

extension Workload {
    /// Where a server workload's client runs, said in its results.
    static func clientNote(_ client: String) -> String {
        "the client (\(client)) runs on the host and reaches the server over TCP: loopback natively and in the container (host network), QEMU user-mode networking (slirp, a forwarded port) in the VM"
    }

    /// The protocol lines a script prints, each `IMGBENCH-<WORD> <id> ...` alone on a line.
    enum Marker {
        static func begin(_ id: String) -> String { "IMGBENCH-BEGIN \(id)" }
        static func end(_ id: String) -> String { "IMGBENCH-END \(id)" }
        static func ready(_ id: String) -> String { "IMGBENCH-READY \(id)" }
        static func missing(_ id: String) -> String { "IMGBENCH-MISSING \(id)" }
        /// An idle VM's used memory in KiB, as its guest sees it.
        static func memory(_ id: String) -> String { "IMGBENCH-MEMORY \(id)" }
    }

    /// The script every side runs with `/bin/sh`: the variables, a check that the image carries
    /// the tools (`IMGBENCH-MISSING id TOOL` and exit 127 when not), then the body between
    /// `IMGBENCH-BEGIN id` and `IMGBENCH-END id STATUS`. A server's body starts it in the
    /// background; the script then waits for its ready line, says `IMGBENCH-READY id`, and waits
    /// for it, stopping it on SIGTERM.
    func script(id: String, parameters p: WorkloadParameters, work: String, port: ServerPorts, rootWork: String? = nil) -> String {
        var s = """
            export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C
            W='\(work)' R='\(rootWork ?? work + "/root")' T=\(p.cpus) D=\(p.durationSeconds) P=\(port.control) Q=\(port.data ?? 0)
            mkdir -p "$W" "$R"
            for tool in \(tools.joined(separator: " ")); do
              command -v "$tool" >/dev/null 2>&1 || { echo "\(Marker.missing(id)) $tool"; exit 127; }
            done
            echo "\(Marker.begin(id))"

            """
        switch shape {
        case .inside:
            s += "(\n\(body(p))\n) 2>&1\nst=$?\n"
        case let .server(readyLine):
            s += """
                \(body(p))
                S=$!
                trap 'kill $S 2>/dev/null; wait $S; echo "\(Marker.end(id)) 143"; exit 0' TERM INT
                n=0
                until grep -q '\(readyLine)' "$W/server.log" 2>/dev/null; do
                  if ! kill -0 $S 2>/dev/null; then tail -20 "$W/server.log"; echo "\(Marker.end(id)) 1"; exit 1; fi
                  n=$((n+1)); [ $n -lt 6000 ] || { tail -20 "$W/server.log"; echo "\(Marker.end(id)) 124"; exit 1; }
                  sleep 0.1
                done
                echo "\(Marker.ready(id))"
                wait $S
                st=$?

                """
        }
        s += "echo \"\(Marker.end(id)) $st\"\n"
        return s
    }
}
