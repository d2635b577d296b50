"""`python -m transformer_rs ...`: the same as the `transformer-rs` command."""

from .cli import main

raise SystemExit(main())
