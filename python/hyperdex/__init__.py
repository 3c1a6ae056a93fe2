"""hyperdex: Python client for hyperdex-rs, a HyperDex-compatible searchable, replicated
key-value store. See hyperdex.client and hyperdex.admin."""
