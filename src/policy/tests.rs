// policy loader tests
