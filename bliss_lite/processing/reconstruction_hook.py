"""The `reconstruction` hook (written with the reconstruction modules)."""
