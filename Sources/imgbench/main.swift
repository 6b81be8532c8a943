import IMGBenchCLI

await IMGBench.start()
