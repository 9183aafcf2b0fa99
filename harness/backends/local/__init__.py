"""The local backend (the default): Redis, the API and the workers as labelled processes on
loopback; `stack.Stack` is its Backend, `worker.WorkerHandle` its WorkerControl."""
