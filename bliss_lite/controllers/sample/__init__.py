"""The simulated XRD-CT sample: phantom, diffraction model, and what the detector and monitors see."""
