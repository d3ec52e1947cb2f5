"""rawc verifier: run compiled transformers against the interpreter and closed-form solvers."""
