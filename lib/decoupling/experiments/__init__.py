"""One module per chapter. Each holds frozen configs and plain functions `fn(cfg) -> dict` that chapters run
through the results store (`Chapter.run`), with `PRESETS[fn.__name__] = {"smoke": cfg, "full": cfg}` for
every experiment function."""
