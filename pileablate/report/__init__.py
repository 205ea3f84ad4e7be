"""Reports: tables and plots from run directories."""
