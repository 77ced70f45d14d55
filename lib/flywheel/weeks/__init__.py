"""`flywheel run`: weeks of an organisation's traffic through the real parts (the demo world, the router
service, the cycles), the promoted router serving, its mistakes coming back, the next cycle learning."""
