/// How large a recipe may be: past these the parser stops with the place, rather than run out of
/// memory or time (`ENV X=${X}${X}` forty times over is a terabyte). Far above any real
/// Containerfile; a test may set them lower.
public struct RecipeLimits: Equatable, Sendable {
    /// Bytes of one physical line.
    public var lineBytes = 1 << 20
    /// Bytes of one logical line, its continuations joined.
    public var logicalLineBytes = 4 << 20
    /// Instructions after FROM.
    public var instructions = 100_000
    /// Bytes of one word (a value, a path, a name) once ARG and ENV values are substituted.
    public var expandedWordBytes = 1 << 20
    /// Bytes of every ENV and ARG name and value in force at once.
    public var environmentBytes = 8 << 20
    /// ENV and ARG variables in force at once (each step records them all).
    public var variables = 1000
    /// Variables recorded by the steps together: the steps times the variables in force.
    public var recordedVariables = 4_000_000

    public init() {}

    public static let standard = RecipeLimits()
}
