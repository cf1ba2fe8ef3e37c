# A stand-in for conda's shell hook in srl-agent's SWE-bench images (there is no real conda:
# the envs under /opt/miniconda3/envs are Python venvs). `conda activate NAME|PREFIX` and
# `conda deactivate` change PATH, CONDA_PREFIX, CONDA_DEFAULT_ENV and CONDA_SHLVL the way conda
# does; anything else goes to /opt/miniconda3/bin/conda. SWE-bench's eval scripts source this
# under `set -u`, so every variable is read with a default.

export CONDA_EXE=/opt/miniconda3/bin/conda
_CONDA_ROOT=/opt/miniconda3

__conda_prefix() {
    case "$1" in
        base) printf '%s\n' "$_CONDA_ROOT" ;;
        */*) printf '%s\n' "${1%/}" ;;
        *) printf '%s\n' "$_CONDA_ROOT/envs/$1" ;;
    esac
}

# PATH with its first "$1" entry replaced by "$2" ("" drops it), or "$2" prepended when "$1" is not
# there. No loop, so a `set -x` trace stays a few lines, as conda's own is.
__conda_swap_path() {
    local old=$1 new=$2 p=":${PATH:-}:"
    if [ -n "$old" ] && case $p in *:"$old":*) true ;; *) false ;; esac; then
        p="${p%%:"$old":*}:${new:+$new:}${p#*:"$old":}"
    elif [ -n "$new" ]; then
        p=":$new$p"
    fi
    p=${p#:}
    PATH=${p%:}
    export PATH
}

__conda_activate() {
    local name=${1:-base} prefix level
    prefix=$(__conda_prefix "$name")
    if [ ! -x "$prefix/bin/python" ] && [ "$prefix" != "$_CONDA_ROOT" ]; then
        printf 'EnvironmentNameNotFound: Could not find conda environment: %s\n' "$name" >&2
        return 1
    fi
    level=${CONDA_SHLVL:-0}
    if [ "$level" -gt 0 ] && [ -n "${CONDA_PREFIX:-}" ]; then
        # Like conda without --stack: the new env takes the old one's place on PATH.
        eval "export CONDA_PREFIX_$level=\"\$CONDA_PREFIX\""
        __conda_swap_path "$CONDA_PREFIX/bin" "$prefix/bin"
    else
        __conda_swap_path "" "$prefix/bin"
    fi
    export CONDA_PREFIX=$prefix CONDA_SHLVL=$((level + 1))
    case "$name" in */*) export CONDA_DEFAULT_ENV=$prefix ;; *) export CONDA_DEFAULT_ENV=$name ;; esac
    export CONDA_PROMPT_MODIFIER="($CONDA_DEFAULT_ENV) "
}

__conda_deactivate() {
    local level=${CONDA_SHLVL:-0} previous
    [ "$level" -gt 0 ] || return 0
    if [ "$level" -gt 1 ]; then
        eval "previous=\${CONDA_PREFIX_$((level - 1)):-}"
        unset "CONDA_PREFIX_$((level - 1))"
        __conda_swap_path "${CONDA_PREFIX:-}/bin" "$previous/bin"
        export CONDA_PREFIX=$previous CONDA_SHLVL=$((level - 1))
        if [ "$previous" = "$_CONDA_ROOT" ]; then export CONDA_DEFAULT_ENV=base; else export CONDA_DEFAULT_ENV=${previous##*/}; fi
        export CONDA_PROMPT_MODIFIER="($CONDA_DEFAULT_ENV) "
    else
        __conda_swap_path "${CONDA_PREFIX:-}/bin" ""
        unset CONDA_PREFIX CONDA_DEFAULT_ENV CONDA_PROMPT_MODIFIER
        export CONDA_SHLVL=0
    fi
}

conda() {
    case "${1:-}" in
        activate) shift; __conda_activate "$@" ;;
        deactivate) __conda_deactivate ;;
        *) "$CONDA_EXE" "$@" ;;
    esac
}
