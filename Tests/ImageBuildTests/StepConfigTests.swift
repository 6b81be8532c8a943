@testable import ImageBuild
import RecipePlan
import Testing

// The image config a recipe's metadata steps leave.

@Test func twentyThousandLabelsAndPortsAllReachTheImageConfig() throws {
    // Each LABEL copied the whole label map: 100k of them took 86 s.
    let recipe = try RecipeParser(file: "t/Containerfile").parse(
        "FROM scratch\n" + (0..<20_000).map { "LABEL n\($0)=v\($0)\nEXPOSE \($0 % 1000 + 1)\n" }.joined() + "LABEL n0=last\nVOLUME /a /b\n")
    let c = StepConfig.of(recipe, through: recipe.steps.count - 1)
    #expect(c.image.labels?.count == 20_000)
    #expect(c.image.labels?["n0"] == "last" && c.image.labels?["n19999"] == "v19999")
    #expect(c.image.exposedPorts?.count == 1000)
    #expect(c.image.volumes?.keys.sorted() == ["/a", "/b"])
}
