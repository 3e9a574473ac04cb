"""Declarative stacks for vpcctl: `plan`, `apply` and `destroy` of a YAML stack file.

No local state file: the live state of a stack is whatever carries its tag `stack:<name>`
(`kubectl apply --prune` style). The pieces, each testable on its own:
`kinds` (the table of resource kinds, in dependency order), `yamlmarks` (YAML with line
numbers), `parse` (the file, validated before any API call), `live` (the tagged resources),
`plan` (a pure diff of the two), `execute` (the plan against the API) and `commands`.
"""
