import Foundation
import OCI
@testable import Registry
import Testing
import TestSupport

/// References, auth files and challenges: the parts of the client that need no registry.
struct ReferenceTests {
    @Test(arguments: [
        ("127.0.0.1:5000/tiny:v1", "127.0.0.1:5000", "tiny", "v1"),
        ("localhost/team/app", "localhost", "team/app", nil),
        ("quay.io/org/img:1.0-rc_2", "quay.io", "org/img", "1.0-rc_2"),
        ("debian:bookworm", "docker.io", "library/debian", "bookworm"),
        ("user/app", "docker.io", "user/app", nil),
    ] as [(String, String, String, String?)])
    func parsesReferences(text: String, registry: String, repository: String, tag: String?) throws {
        let r = try ImageReference(parsing: text)
        #expect(r.registry == registry && r.repository == repository && r.tag == tag, "\(r)")
        #expect(r.manifestReference == (tag ?? "latest"))
    }

    @Test func parsesDigestsAndLoopback() throws {
        let hex = String(repeating: "ab", count: 32)
        let r = try ImageReference(parsing: "127.0.0.1:5000/tiny@sha256:\(hex)")
        #expect(r.digest?.hex == hex && r.tag == nil && r.manifestReference == "sha256:\(hex)")
        #expect(r.isLoopback && r.host == "127.0.0.1")
        #expect(try ImageReference(parsing: "localhost:1/a").isLoopback)
        #expect(try !ImageReference(parsing: "registry.example:5000/a").isLoopback)
        #expect(try ImageReference(parsing: "docker.io/library/debian").endpoint == "registry-1.docker.io")
    }

    @Test(arguments: ["127.0.0.1:5000/Tiny:v1", "127.0.0.1:5000/tiny:-v1", "127.0.0.1:5000/tiny@sha256:abc", "127.0.0.1:5000/a//b", ":5000/a"])
    func refusesBadReferences(text: String) {
        #expect(throws: RegistryError.self) { try ImageReference(parsing: text) }
    }

    @Test func authFilesAreReadInOrderAndTheLongestKeyWins() throws {
        let dir = try TempDir("auth")
        let b64 = { (s: String) in Data(s.utf8).base64EncodedString() }
        try #"{"auths": {"reg.example:5000": {"auth": "\#(b64("a:1"))"}, "reg.example:5000/team": {"auth": "\#(b64("b:2"))"}}}"#
            .write(toFile: dir.file("auth.json"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir.file("home/.docker"), withIntermediateDirectories: true)
        try #"{"auths": {"https://other.example/v1/": {"auth": "\#(b64("c:3:with:colons"))"}}}"#
            .write(toFile: dir.file("home/.docker/config.json"), atomically: true, encoding: .utf8)
        let env = ["REGISTRY_AUTH_FILE": dir.file("auth.json"), "HOME": dir.file("home")]
        #expect(try AuthFiles.lookup(registry: "reg.example:5000", repository: "x", environment: env)?.username == "a")
        #expect(try AuthFiles.lookup(registry: "reg.example:5000", repository: "team/x", environment: env)?.username == "b")
        let c = try AuthFiles.lookup(registry: "other.example", repository: "x", environment: env)
        #expect(c?.username == "c" && c?.password == "3:with:colons" && c?.source == dir.file("home/.docker/config.json"))
        #expect(try AuthFiles.lookup(registry: "none.example", repository: "x", environment: env) == nil)
        try "{not json".write(toFile: dir.file("auth.json"), atomically: true, encoding: .utf8)
        #expect(throws: RegistryError.self) { try AuthFiles.lookup(registry: "reg.example:5000", repository: "x", environment: env) }
    }

    @Test func challengesAndUploadRanges() {
        let (scheme, p) = RegistryClient.parseChallenge(#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#)
        #expect(scheme == "Bearer" && p["realm"] == "https://auth.example/token" && p["service"] == "registry.example"
                && p["scope"] == "repository:a/b:pull,push")
        #expect(RegistryClient.parseChallenge(#"Basic realm="imgbench-test""#).0 == "Basic")
        #expect(RegistryClient.nextOffset(range: "0-1048575") == 1_048_576)
        #expect(RegistryClient.nextOffset(range: "0--1") == 0)
        #expect(RegistryClient.nextOffset(range: nil) == 0)
        #expect(RegistryClient.referrersTag(Digest.of(Data())) == "sha256-" + Digest.of(Data()).hex)
    }
}
