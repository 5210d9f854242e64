"""The run table: schema and validation, reading and atomic writing, schedules, simulated tables, and the bundled tables (in ``bundled/``)."""
