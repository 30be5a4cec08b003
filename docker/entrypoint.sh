#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Container entrypoint: runs inferd with the container's arguments. The default
# model is found in /usr/share/inferd/models (config_find_default_model).
set -e
exec /usr/local/bin/inferd "$@"
