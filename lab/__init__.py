"""The lab bench: everything that starts, wires, delays, supervises and packages the servers.

Nothing in `servinglab`, `monolith` or `microservices` imports this package; it imports them
(by module name, through the table in `lab.architectures`). The benchmarks, the tests and the
entry points (`make run`, the container entrypoint, `make certs`) are its only users.
"""
