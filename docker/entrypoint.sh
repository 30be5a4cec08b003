#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Container entrypoint: runs inferd with the container's arguments (`serve` by
# default and under SageMaker). exec, so inferd is PID 1's process and gets
# SIGTERM itself. The model: --model, HF_MODEL_ID, the GGUF SageMaker puts in
# /opt/ml/model, else the default model in /usr/share/inferd/models.
set -e
exec /usr/local/bin/inferd "$@"
