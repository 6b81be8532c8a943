import Foundation
import Host

/// The output folder of a build and its two neighbours, `OUT.partial` (the build in progress) and
/// `OUT.old` (the previous outputs while they are swapped out). A build replaces all three, so it
/// first makes sure that they hold nothing but an earlier build's outputs: each is missing, an
/// empty folder, or a folder that carries the marker file every build writes. Anything else (a
/// folder of the user's, a file, `/`, a folder holding the cache) is refused before the build
/// starts, and nothing outside the output and the cache is ever removed.
public enum OutputFolder {
    /// The marker a build writes into its output folder (and into the partial one, first thing).
    public static let marker = ".imgbench-output"

    /// Refuses an output that a build must not replace (see the type's comment).
    public static func check(_ output: String, cache: String) throws {
        guard !output.isEmpty else { throw BuildError.invalid("--output: an empty path") }
        let out = LexicalPath.absolute(output)
        if out == "/" || (try? RootedPath.real(out)) == "/" {
            throw BuildError.invalid("--output \(output): the root folder cannot be a build's output")
        }
        let cacheReal = (try? RootedPath.real(cache)) ?? LexicalPath.absolute(cache)
        let outReal = (try? RootedPath.real(out)) ?? out
        if RootedPath.isWithin(cacheReal, outReal) {
            throw BuildError.invalid("--output \(output): it holds the cache \(cache); a build replaces its output folder")
        }
        for path in [out, out + ".partial", out + ".old"] {
            try checkReplaceable(path, named: path == out ? output : path)
        }
    }

    /// Writes the marker into `folder`.
    public static func mark(_ folder: String) throws {
        try Data("an imgbench build output: a later build to the same --output replaces this folder\n".utf8)
            .write(to: URL(fileURLWithPath: "\(folder)/\(marker)"))
    }

    /// Whether `folder` is an earlier build's output.
    public static func isOutput(_ folder: String) -> Bool {
        FileSystem.exists("\(folder)/\(marker)")
    }

    static func checkReplaceable(_ path: String, named name: String) throws {
        guard let st = try FileSystem.lstatIfExists(path) else { return }
        if st.isSymlink {
            throw BuildError.invalid("--output \(name) is a symbolic link; give the folder it points to, or another path")
        }
        guard st.isDirectory else {
            throw BuildError.invalid("--output \(name) is a file, not a folder; a build would replace it")
        }
        let children = try FileSystem.children(path)
        guard children.isEmpty || children.contains(marker) else {
            throw BuildError.invalid("--output \(name) exists and is not an imgbench output (it has no \(marker)); "
                + "a build replaces its output folder, so remove it or choose another --output")
        }
    }
}
