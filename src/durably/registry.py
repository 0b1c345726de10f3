"""Workflow and step registration: names, versions and the type hints used for payloads."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
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
    is_async: bool
    signature: inspect.Signature
    input_hint: object
    result_hint: object

    def bind_input(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind call arguments (without the context) to parameter names.

        Raises:
            TypeError: the arguments do not fit the workflow's signature.
        """
        try:
            bound = self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"workflow {self.name!r}: {exc}") from None
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(self.signature.parameters)))
        return arguments

    def call_arguments(self, arguments: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Rebuild positional and keyword arguments (without the context) from names."""
        context_name = next(iter(self.signature.parameters))
        bound = inspect.BoundArguments(self.signature, {context_name: None, **arguments})
        return bound.args[1:], bound.kwargs


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
        self, fn: Callable[..., Any], *, name: str | None = None, version: str | None = None
    ) -> WorkflowDefinition:
        """Register ``fn`` as a workflow.

        Raises:
            ConfigurationError: the function takes no context parameter, or another
                function is already registered under the name.
        """
        workflow_name = validate_identifier(name or fn.__qualname__, "workflow name")
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
            is_async=inspect.iscoroutinefunction(fn),
            signature=signature,
            input_hint=input_hint,
            result_hint=return_hint(fn),
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


def source_version(fn: Callable[..., Any]) -> str:
    """A short hash of the function's source, used as its version when none is given."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(source.encode()).hexdigest()[:12]
