import Foundation
@testable import ImageBuild
import OCI
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

@Test func healthcheckAndOnbuildReachTheConfigAsDockerWritesThem() throws {
    let recipe = try RecipeParser(file: "t/Containerfile").parse("""
        FROM scratch
        HEALTHCHECK --interval=5m --retries=2 CMD curl -f http://localhost/
        ONBUILD COPY . /app
        ONBUILD RUN make
        """)
    let c = StepConfig.of(recipe, through: recipe.steps.count - 1)
    let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(c.image)) as? [String: Any])
    let health = try #require(json["Healthcheck"] as? [String: Any])
    #expect(health["Test"] as? [String] == ["CMD-SHELL", "curl -f http://localhost/"])
    #expect(health["Interval"] as? Int64 == 300_000_000_000)
    #expect(health["Retries"] as? Int == 2)
    #expect(health["Timeout"] == nil && health["StartPeriod"] == nil, "durations not set are left out, as docker leaves them")
    #expect(json["OnBuild"] as? [String] == ["COPY . /app", "RUN make"])
    let none = try RecipeParser(file: "t/Containerfile").parse("FROM scratch\nHEALTHCHECK CMD true\nHEALTHCHECK NONE\n")
    #expect(StepConfig.of(none, through: 1).image.healthcheck == HealthConfig(test: ["NONE"]))
}
