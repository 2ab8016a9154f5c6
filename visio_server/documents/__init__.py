"""Documents of a call on the server: uploads, downloads, device commands, export, purge."""
