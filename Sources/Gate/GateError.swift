import Foundation
import ImageBuild

/// What `imgbench check` cannot work with: a report or budget that cannot be read or does not
/// mean anything, named with the file and the place in it (the documents' error of ImageBuild,
/// which reads the reports).
public typealias GateError = DocumentError
