"""Processing: azimuthal integration, sinograms, reconstruction (integration issue)."""
