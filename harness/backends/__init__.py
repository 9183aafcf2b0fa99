"""How a stack is realised. `base` holds the protocols faults and the runner use (`Backend`,
`WorkerControl`) and `make_stack`; `config` the backend-neutral `StackConfig`; `client` the HTTP
and Redis side every stack shares; `local/` and `docker/` the two backends. Nothing is imported
here, so that the light parts (base, config) load without a backend."""
