"""The committed OpenAPI document and the script that regenerates it."""
