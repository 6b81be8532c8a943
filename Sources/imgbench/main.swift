import IMGBenchCLI

await IMGBench.main()
