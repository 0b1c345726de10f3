"""Workflow and step registration: names, versions and the type hints used for payloads."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypedDict, cast

from durably.codec import parameter_hints, return_hint
from durably.errors import ConfigurationError, WorkflowNotRegisteredError
from durably.identifiers import validate_identifier
from durably.retry import RetryPolicy

#: Attribute set on decorated functions so that they can be found from the function.
DEFINITION_ATTRIBUTE = "__durably_definition__"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowDefinition:
    """A registered workflow: its function and what durably derives from it."""

    name: str
    fn: Callable[..., Any]
    version: str
    #: Older versions whose unfinished workflows this code also runs (it replays their
    #: histories, e.g. by guarding its changes with ``ctx.patched()``).
    also_runs: frozenset[str] = frozenset()
    is_async: bool
    signature: inspect.Signature
    input_hint: object
    result_hint: object
    #: The parameters' names after the context, when every one of them may be passed
    #: by position or by name (no ``*args``, ``**kwargs``, keyword- or positional-only
    #: parameter): a call giving all of them by position then binds without
    #: ``inspect`` (a tenth of the cost). None otherwise.
    plain_names: tuple[str, ...] | None = None

    @property
    def runnable_versions(self) -> frozenset[str]:
        """The recorded versions an executor with this code claims: its own version and
        those it declares with ``also_runs`` (workflows recorded without a version,
        ``""``, are claimed whatever the code's version)."""
        return self.also_runs | {self.version}

    def bind_input(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind call arguments (without the context) to parameter names.

        Raises:
            TypeError: the arguments do not fit the workflow's signature.
        """
        names = self.plain_names
        if names is not None and not kwargs and len(args) == len(names):
            return dict(zip(names, args, strict=True))
        try:
            bound = self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"workflow {self.name!r}: {exc}") from None
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(self.signature.parameters)))
        return arguments

    def call_arguments(self, arguments: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Rebuild positional and keyword arguments (without the context) from names."""
        names = self.plain_names
        if names is not None and tuple(arguments) == names:  # all given, in order
            return tuple(arguments.values()), {}
        context_name = next(iter(self.signature.parameters))
        bound = inspect.BoundArguments(self.signature, {context_name: None, **arguments})
        return bound.args[1:], bound.kwargs


def _plain_names(parameters: list[inspect.Parameter]) -> tuple[str, ...] | None:
    """See :attr:`WorkflowDefinition.plain_names`."""
    if all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
        return tuple(parameter.name for parameter in parameters)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepDefinition:
    """Options given to ``@app.step(...)``."""

    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy | None = None
    timeout: timedelta | None = None
    compensate: Callable[..., Any] | None = None


@dataclass(slots=True)
class Registry:
    """The workflows an app can run, by name."""

    workflows: dict[str, WorkflowDefinition] = field(default_factory=dict)

    def register_workflow(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        version: str | None = None,
        also_runs: Collection[str] = (),
    ) -> WorkflowDefinition:
        """Register ``fn`` as a workflow.

        Raises:
            ConfigurationError: the function takes no context parameter, another
                function is already registered under the name, or a version is not
                a usable string (see ``validate_identifier``).
        """
        workflow_name = validate_identifier(
            fn.__qualname__ if name is None else name, "workflow name"
        )
        older_versions = _older_versions(workflow_name, version, also_runs)
        signature = inspect.signature(fn)
        parameters = list(signature.parameters.values())
        if not parameters or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise ConfigurationError(
                f"workflow {workflow_name!r} must take the workflow context as its first "
                f"parameter: def {fn.__name__}(ctx, ...)"
            )
        existing = self.workflows.get(workflow_name)
        if existing is not None and existing.fn is not fn:
            raise ConfigurationError(
                f"two functions are registered as workflow {workflow_name!r} "
                f"({existing.fn.__module__}.{existing.fn.__qualname__} and "
                f"{fn.__module__}.{fn.__qualname__}); give one of them another name="
            )
        hints = parameter_hints(fn)
        input_fields: dict[str, object] = {}
        for parameter in parameters[1:]:
            hint = hints.get(parameter.name, Any)
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                hint = tuple[hint, ...]  # type: ignore[valid-type]
            elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
                hint = dict[str, hint]  # type: ignore[valid-type]
            input_fields[parameter.name] = hint
        input_hint = TypedDict(  # type: ignore[misc]  # a TypedDict built from the signature
            f"{workflow_name}_input", cast(dict[str, Any], input_fields)
        )
        definition = WorkflowDefinition(
            name=workflow_name,
            fn=fn,
            version=version if version is not None else source_version(fn),
            also_runs=older_versions,
            is_async=inspect.iscoroutinefunction(fn),
            signature=signature,
            input_hint=input_hint,
            result_hint=return_hint(fn),
            plain_names=_plain_names(parameters[1:]),
        )
        self.workflows[workflow_name] = definition
        return definition

    def lookup(self, workflow: Callable[..., Any] | str) -> WorkflowDefinition:
        """The definition of a workflow given by function or by name.

        Raises:
            WorkflowNotRegisteredError: it is not registered in this app.
        """
        if isinstance(workflow, str):
            definition = self.workflows.get(workflow)
        else:
            definition = getattr(workflow, DEFINITION_ATTRIBUTE, None)
            if not isinstance(definition, WorkflowDefinition) or (
                self.workflows.get(definition.name) is not definition
            ):
                definition = None
        if definition is None:
            shown = (
                workflow
                if isinstance(workflow, str)
                else getattr(workflow, "__qualname__", workflow)
            )
            raise WorkflowNotRegisteredError(
                f"workflow {shown!r} is not registered in this app; decorate it with "
                f"@app.workflow() (registered: {sorted(self.workflows) or 'none'})"
            )
        return definition

    def names(self) -> list[str]:
        """Names of every registered workflow."""
        return sorted(self.workflows)

    def versions(self) -> dict[str, tuple[str, ...]]:
        """The versions this code runs, by workflow name, each with the version it
        records first and then those it declares with ``also_runs``: what its
        executor claims (see ``store/base.py``)."""
        return {
            name: (definition.version, *sorted(definition.also_runs - {definition.version}))
            for name, definition in self.workflows.items()
        }


def _older_versions(
    workflow_name: str, version: str | None, also_runs: Collection[str]
) -> frozenset[str]:
    """Check the version options of ``@app.workflow``; return ``also_runs`` as a set."""
    if version is not None:
        _check_version(workflow_name, version, "version")
    if isinstance(also_runs, str) or not isinstance(also_runs, Collection):
        raise ConfigurationError(
            f"workflow {workflow_name!r}: also_runs must be a list of version strings, "
            f'such as also_runs=["1"], not {also_runs!r}'
        )
    for older in also_runs:
        _check_version(workflow_name, older, "a version in also_runs")
    return frozenset(also_runs)


def _check_version(workflow_name: str, version: object, what: str) -> None:
    try:
        validate_identifier(version, f"{what} of workflow {workflow_name!r}")
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f'{error} (versions are strings such as "2")') from None


def source_version(fn: Callable[..., Any]) -> str:
    """A short hash of the function's source, used as its version when none is given."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(source.encode()).hexdigest()[:12]
