"""Stand-ins for the library systems the central talks to, written from their own code and
specifications: a SIP2 server (pysip2's messages, Koha's and Evergreen's behaviour) and
Koha's REST API (validated against Koha's OpenAPI document). The tests and the benchmarks
run the central against them; they need the development dependencies (`.[dev]`)."""
