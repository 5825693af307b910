//! Join of predictions with delayed ground truth.
