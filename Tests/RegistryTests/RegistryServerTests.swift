import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// The client against a real registry, Debian's docker-registry (distribution 2.8), started by
/// each test on 127.0.0.1 at a free port: plain, or TLS with a test CA and htpasswd. Images are
/// small layouts made here (a 3 MiB layer, so that a 1 MiB chunk size makes chunked uploads);
/// skopeo cross-checks what the registry holds.
@Suite(.enabled(if: LocalRegistry.isAvailable, "needs docker-registry, openssl and htpasswd (scripts/install-deps.sh)"))
struct RegistryServerTests {
    @Test func pushedImageHasItsDigestForSkopeoAndComesBackTheSame() async throws {
        let registry = try LocalRegistry()
        let (dir, layout, image) = try Self.smallImage()
        let ref = try ImageReference(parsing: "\(registry.address)/demo/app:v1")
        let client = try RegistryClient(for: ref, options: Self.options(chunk: 1 << 20))
        defer { Task { await client.shutdown() } }
        let first = try await client.pushImage(layout, manifest: image, to: ref.repository)
        #expect(first == [.uploaded, .uploaded])
        try await client.putManifest(ref.repository, reference: "v1", data: try layout.blobs.read(image), mediaType: image.mediaType)
        #expect(try Self.skopeoDigest(ref) == image.digest.description)

        #expect(try await client.pushImage(layout, manifest: image, to: ref.repository) == [.present, .present], "HEAD skips what is there")
        #expect(try await client.pushImage(layout, manifest: image, to: "demo/other", mountFrom: ref.repository) == [.mounted, .mounted])

        let back = try ImageLayout.create(at: dir.file("back"))
        let remote = try #require(try await client.manifest(ref.repository, reference: "v1"))
        let pulled = try await client.pullImage(ref.repository, remote, into: back, tag: "v1")
        #expect(pulled.digest == image.digest)
        for blob in try back.image(tag: "v1").manifest.layers { try back.blobs.verify(blob) }
    }

    @Test func artifactsReferToTheImageThroughTheReferrersTag() async throws {
        let registry = try LocalRegistry()
        let (dir, layout, image) = try Self.smallImage()
        defer { withExtendedLifetime(dir) {} }
        let ref = try ImageReference(parsing: "\(registry.address)/demo/app:v1")
        let client = try RegistryClient(for: ref, options: Self.options())
        defer { Task { await client.shutdown() } }
        _ = try await client.pushImage(layout, manifest: image, to: ref.repository)
        let report = Data(#"{"recipe": "demo"}"#.utf8)
        let a = try await client.pushArtifact(ref.repository, file: report, name: "report.json", fileType: "application/json",
                                              artifactType: "application/vnd.example.report", subject: image,
                                              annotations: [AnnotationKey.created: "2026-01-01T00:00:00Z"])
        _ = try await client.pushArtifact(ref.repository, file: Data("{}".utf8), name: "other.json", fileType: "application/json",
                                          artifactType: "application/vnd.example.other", subject: image)
        // distribution 2.8 has no referrers API: the list is the index under the fallback tag.
        let index = try #require(try await client.manifest(ref.repository, reference: RegistryClient.referrersTag(image.digest)))
        #expect(index.mediaType == MediaType.imageIndex)
        let listed = try await client.referrers(ref.repository, subject: image.digest, artifactType: "application/vnd.example.report")
        #expect(listed.map(\.digest) == [a.digest])
        let fetched = try await client.fetchArtifact(ref.repository, subject: image.digest, artifactType: "application/vnd.example.report")
        #expect(fetched?.file == report && fetched?.annotations[AnnotationKey.created] == "2026-01-01T00:00:00Z")
    }

    @Test func tlsRegistryWithRightAndWrongCredentials() async throws {
        let registry = try LocalRegistry(tls: true)
        let (dir, layout, image) = try Self.smallImage()
        defer { withExtendedLifetime(dir) {} }
        let ref = try ImageReference(parsing: "\(registry.address)/demo/app:v1")

        let good = try RegistryClient(for: ref, options: Self.options(certDir: registry.certDir, auth: try registry.authFile()))
        defer { Task { await good.shutdown() } }
        _ = try await good.pushImage(layout, manifest: image, to: ref.repository)
        try await good.putManifest(ref.repository, reference: "v1", data: try layout.blobs.read(image), mediaType: image.mediaType)
        let skopeo = try HostTool.run("skopeo", package: "skopeo", ["inspect", "--cert-dir", registry.certDir!,
                                      "--creds", "\(registry.username):\(registry.password)", "docker://\(ref)"])
        #expect(skopeo.status == 0 && skopeo.stdout.contains(image.digest.description), "skopeo: \(skopeo.output)")

        let wrong = try RegistryClient(for: ref.tagged("v2"), options: Self.options(certDir: registry.certDir, auth: try registry.authFile(password: "wrong")))
        defer { Task { await wrong.shutdown() } }
        let error = await #expect(throws: RegistryError.self) {
            _ = try await wrong.pushImage(layout, manifest: image, to: ref.repository)
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("registry \(registry.address)") && text.contains("repository demo/app") && text.contains("HTTP 401"), "\(text)")
        #expect(try await good.manifest(ref.repository, reference: "v2") == nil, "nothing under the tag")
    }

    @Test func clientCertificateFromTheCertDir() async throws {
        let registry = try LocalRegistry(tls: true, clientCertificates: true)
        let certDir = try #require(registry.certDir)
        let (dir, layout, image) = try Self.smallImage()
        defer { withExtendedLifetime(dir) {} }
        let ref = try ImageReference(parsing: "\(registry.address)/demo/app:v1")
        try await RegistryClient.using(ref, options: Self.options(certDir: certDir, auth: try registry.authFile())) { client in
            _ = try await client.pushImage(layout, manifest: image, to: ref.repository)
        }
        // The CA alone, no client certificate: the registry ends the handshake.
        let caOnly = try TempDir("registry-ca-only")
        try FileManager.default.copyItem(atPath: certDir + "/ca.crt", toPath: caOnly.file("ca.crt"))
        let error = await #expect(throws: RegistryError.self) {
            _ = try await RegistryClient.using(ref, options: Self.options(certDir: caOnly.path, auth: try registry.authFile())) {
                try await $0.hasBlob(ref.repository, image.digest)
            }
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("registry \(registry.address), repository demo/app") && text.contains("no client certificate was offered"), "\(text)")
    }

    @Test func untrustedCertificateIsRefusedNotDowngraded() async throws {
        let registry = try LocalRegistry(tls: true)
        let ref = try ImageReference(parsing: "\(registry.address)/demo/app:v1")
        let client = try RegistryClient(for: ref, options: Self.options(auth: try registry.authFile()))
        defer { Task { await client.shutdown() } }
        let error = await #expect(throws: RegistryError.self) { _ = try await client.hasBlob(ref.repository, Digest.of(Data())) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("TLS failed"), "\(String(describing: error))")
    }

    @Test func stoppedRegistryIsAClearConnectionError() async throws {
        let registry = try LocalRegistry()
        registry.stop()
        let (dir, layout, image) = try Self.smallImage()
        defer { withExtendedLifetime(dir) {} }
        let ref = try ImageReference(parsing: "\(registry.address)/demo/app:v1")
        let client = try RegistryClient(for: ref, options: Self.options())
        defer { Task { await client.shutdown() } }
        let error = await #expect(throws: RegistryError.self) { _ = try await client.pushImage(layout, manifest: image, to: ref.repository) }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("registry \(registry.address), repository demo/app") && text.contains("connection refused"), "\(text)")
    }

    @Test func droppedConnectionMidUploadIsResumed() async throws {
        let (registry, proxy, image, error) = try await Self.pushThroughDroppingProxy(drops: 2)
        #expect(error == nil, "\(String(describing: error))")
        #expect(proxy.dropped == 2)
        #expect(try Self.skopeoDigest(try ImageReference(parsing: "\(registry.address)/demo/app:v1")) == image.digest.description)
    }

    @Test func registryThatAlwaysDropsFailsClearlyWithNothingUnderTheTag() async throws {
        let (registry, _, _, error) = try await Self.pushThroughDroppingProxy(drops: .max)
        let text = error.map { "\($0)" } ?? ""
        #expect(error is RegistryError && text.contains("repository demo/app") && text.contains("attempts"), "\(text)")
        let skopeo = try HostTool.run("skopeo", package: "skopeo", ["inspect", "--tls-verify=false", "docker://\(registry.address)/demo/app:v1"])
        #expect(skopeo.status != 0, "nothing under the tag: \(skopeo.output)")
    }

    @Test func bearerTokensFromTheRegistrysTokenService() async throws {
        let registry = try LocalRegistry(tokens: true)
        let tokens = try #require(registry.tokenServer)
        let (dir, layout, image) = try Self.smallImage()
        defer { withExtendedLifetime(dir) {} }
        let ref = try ImageReference(parsing: "\(registry.address)/demo/app:v1")
        try await RegistryClient.using(ref, options: Self.options(auth: try registry.authFile())) { client in
            _ = try await client.pushImage(layout, manifest: image, to: ref.repository)
            try await client.putManifest(ref.repository, reference: "v1", data: try layout.blobs.read(image), mediaType: image.mediaType)
        }
        #expect(tokens.scopes.contains("repository:demo/app:pull,push"), "\(tokens.scopes)\n\(registry.log)")
        let creds = "\(registry.username):\(registry.password)"
        let skopeo = try HostTool.run("skopeo", package: "skopeo", ["inspect", "--tls-verify=false", "--creds", creds, "docker://\(ref)"])
        #expect(skopeo.status == 0 && skopeo.stdout.contains(image.digest.description), "skopeo: \(skopeo.output)")

        // Wrong credentials: the token service refuses them; one error naming where and the status.
        let error = await #expect(throws: RegistryError.self) {
            _ = try await RegistryClient.using(ref, options: Self.options(auth: try registry.authFile(password: "wrong"))) {
                try await $0.manifest(ref.repository, reference: "v1")
            }
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("registry \(registry.address), repository demo/app") && text.contains("GET token from \(tokens.realm)")
                && text.contains("HTTP 401"), "\(text)")
        #expect(tokens.refusals >= 1)
    }

    @Test func overloadedRegistryIsRetriedWithBackoffThenAnswers() async throws {
        let registry = try LocalRegistry()
        let (dir, layout, image) = try Self.smallImage()
        defer { withExtendedLifetime(dir) {} }
        let direct = try ImageReference(parsing: "\(registry.address)/demo/app:v1")
        try await RegistryClient.using(direct, options: Self.options()) { client in
            _ = try await client.pushImage(layout, manifest: image, to: direct.repository)
            try await client.putManifest(direct.repository, reference: "v1", data: try layout.blobs.read(image), mediaType: image.mediaType)
        }
        // Three 503s, then a 429 asking for one second: the fifth attempt gets the manifest.
        for busy in [DroppingProxy.Busy(status: 503, times: 3), DroppingProxy.Busy(status: 429, retryAfter: 1, times: 1)] {
            let proxy = try DroppingProxy(to: registry.port, dropAfter: .max, busy: busy)
            defer { proxy.close() }
            let ref = try ImageReference(parsing: "127.0.0.1:\(proxy.port)/demo/app:v1")
            let started = Date()
            let m = try await RegistryClient.using(ref, options: Self.options()) { try await $0.manifest(ref.repository, reference: "v1") }
            #expect(m?.digest == image.digest && proxy.answered == busy.times)
            if busy.retryAfter != nil { #expect(Date().timeIntervalSince(started) >= 1, "Retry-After is honoured") }
        }
        // Always busy: the error names the registry, the repository and the status, after every attempt.
        let proxy = try DroppingProxy(to: registry.port, dropAfter: .max, busy: DroppingProxy.Busy(status: 503, times: .max))
        defer { proxy.close() }
        let ref = try ImageReference(parsing: "127.0.0.1:\(proxy.port)/demo/app:v1")
        let error = await #expect(throws: RegistryError.self) {
            _ = try await RegistryClient.using(ref, options: Self.options()) { try await $0.manifest(ref.repository, reference: "v1") }
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("registry 127.0.0.1:\(proxy.port), repository demo/app") && text.contains("503"), "\(text)")
        #expect(proxy.answered == RegistryClient.Options().attempts, "\(proxy.answered) answers")
    }

    // MARK: - Helpers

    /// Pushes the small image, then tags it, through a proxy that drops `drops` connections
    /// after 300 KiB (1 MiB chunks); the error when the push failed.
    static func pushThroughDroppingProxy(drops: Int) async throws -> (LocalRegistry, DroppingProxy, Descriptor, Error?) {
        let registry = try LocalRegistry()
        let proxy = try DroppingProxy(to: registry.port, dropAfter: 300 << 10, drops: drops)
        defer { proxy.close() }
        let (dir, layout, image) = try smallImage()
        defer { withExtendedLifetime(dir) {} }
        let ref = try ImageReference(parsing: "127.0.0.1:\(proxy.port)/demo/app:v1")
        do {
            try await RegistryClient.using(ref, options: options(chunk: 1 << 20)) { client in
                _ = try await client.pushImage(layout, manifest: image, to: ref.repository)
                try await client.putManifest(ref.repository, reference: "v1", data: try layout.blobs.read(image), mediaType: image.mediaType)
            }
            return (registry, proxy, image, nil)
        } catch {
            return (registry, proxy, image, error)
        }
    }

    static func options(chunk: Int = 32 << 20, certDir: String? = nil, auth: String? = nil) -> RegistryClient.Options {
        var o = RegistryClient.Options()
        o.chunkSize = chunk
        o.firstDelay = 0.05
        o.connectTimeout = 2
        o.tls = TLSSettings(verify: true, certDir: certDir)
        o.environment = auth.map { ["REGISTRY_AUTH_FILE": $0] } ?? [:]
        return o
    }

    /// A layout holding one image: a 3 MiB random file in one uncompressed layer.
    static func smallImage() throws -> (TempDir, ImageLayout, Descriptor) {
        let dir = try TempDir("registry-image")
        let root = try dir.sub("root")
        var rng = SeededRandom(seed: UInt64.random(in: 1...UInt64.max))
        try Data(rng.bytes(3 << 20)).write(to: URL(fileURLWithPath: root + "/random.bin"))
        let tar = try runProcess("/bin/tar", ["-C", root, "-cf", dir.file("layer.tar"), "random.bin"])
        try #require(tar.status == 0, "tar: \(tar.output)")
        let layout = try ImageLayout.create(at: dir.file("oci"))
        let layer = try layout.blobs.put(try Data(contentsOf: URL(fileURLWithPath: dir.file("layer.tar"))), mediaType: MediaType.layer)
        let image = try layout.writeImage(layers: [StoredLayer(descriptor: layer, diffID: layer.digest, uncompressedSize: layer.size)],
                                          config: ContainerConfig(), history: [History(createdBy: "test")], created: nil, tag: "v1")
        return (dir, layout, image)
    }

    static func skopeoDigest(_ ref: ImageReference) throws -> String? {
        let r = try HostTool.run("skopeo", package: "skopeo", ["inspect", "--tls-verify=false", "docker://\(ref)"])
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any]
        return json?["Digest"] as? String
    }
}
