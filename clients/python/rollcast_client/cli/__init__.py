"""`rollcast watch` and `rollcast prompt`: command-line clients built on the SDK."""
