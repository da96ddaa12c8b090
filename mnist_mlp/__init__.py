"""The paper's MNIST auxiliary-logit experiment (Section 6.2, Fig. 10) and its projection diagnostic."""
