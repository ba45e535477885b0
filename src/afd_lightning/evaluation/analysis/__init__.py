"""Analyses beyond accuracy: embedding sensitivity and sparsity, class-gradient matrix, t-SNE (:mod:`.embedding`),
and the normalised area under an accuracy-vs-ε curve (:mod:`.auc`)."""
