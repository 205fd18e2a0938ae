"""Pure loss functions: attention maps and distances, distillation distances, projections."""
