#!/bin/sh
# Test hook that fails without reading its input.
exit 3
