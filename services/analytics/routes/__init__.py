"""analytics' HTTP routes, one module per resource."""
