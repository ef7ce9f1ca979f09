"""The built-in zoo (YAML). A package only so that wheels ship it as `archspec_specs`."""
