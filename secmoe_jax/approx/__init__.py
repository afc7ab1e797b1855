"""Approximations of nonlinear functions as data plus float references."""
