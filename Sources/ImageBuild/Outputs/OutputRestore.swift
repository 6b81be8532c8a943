import Foundation
import Host

/// The previous build's outputs that a rebuild keeps (the flattened disk, the runtime bundle, when
/// they would be written the same) are moved into the partial folder. Until the partial folder
/// is swapped in, each is moved back when the build fails or is interrupted: the Ctrl-C handler
/// runs these moves (registered with `Cleanup`) before it removes the partial folder, so the old
/// outputs never go with it.
final class OutputRestore {
    private var moves: [Int] = []

    /// Registers that `original` is about to be moved to `moved` (registered first, so that an
    /// interruption right after the move still puts it back; before it, the move back finds
    /// nothing and does nothing).
    func willMove(_ original: String, to moved: String) {
        moves.append(Cleanup.register("move \(moved) back to \(original)") {
            guard FileManager.default.fileExists(atPath: moved) else { return }
            try? FileManager.default.moveItem(atPath: moved, toPath: original)
        })
    }

    /// Moves everything back, newest first (the build failed).
    func undo() {
        for id in moves.reversed() { Cleanup.run(id) }
        moves = []
    }

    /// The partial folder is now the output folder: nothing is moved back.
    func forget() {
        for id in moves { Cleanup.unregister(id) }
        moves = []
    }
}
