"""Everything about building and reading a QNN context binary for the HTP."""
