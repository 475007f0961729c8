"""Local fake servers shared by the tests and the benchmarks: an OpenAI-compatible model server
(`fake_llm`, with the fault-injecting variants in `fake_faults`), a web with a search API (`fake_web`)
and the random schema-literal answers (`schema_random`). Real sockets on 127.0.0.1, standard library
only, so `bench/` uses them without importing the `tests` package."""
