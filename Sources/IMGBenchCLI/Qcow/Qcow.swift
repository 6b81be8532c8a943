import ArgumentParser

/// `imgbench qcow …`: the qcow2 library on the command line.
public struct Qcow: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "qcow",
        abstract: "Create, inspect, check, map, convert and compare qcow2 images.",
        subcommands: [QcowCreate.self, QcowInfo.self, QcowMap.self, QcowCheck.self, QcowConvert.self, QcowCompare.self, QcowStress.self])

    public init() {}
}
