"""Activity blueprints: thin adapters that decode a contract, call one function in shared/, encode."""
