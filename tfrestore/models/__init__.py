"""The trainable networks besides the converted classifiers: learned inverters, the deep image prior's generator, the
digits autoencoder and classifier, the DFT deconvolution layer."""
