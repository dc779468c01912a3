"""One module per chapter. Each holds frozen configs with per-profile PRESETS and plain functions
`fn(cfg) -> dict` that chapters run through the results store (`Chapter.run`)."""
