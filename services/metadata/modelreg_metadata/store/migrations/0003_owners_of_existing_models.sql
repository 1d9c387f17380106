-- Models registered before grants existed: their creators become their owners, as
-- CreateRegisteredModel makes every new model's creator its owner. Models the services
-- created themselves (the internal principal) get no grant; models that already have a
-- policy keep it.
WITH created AS (
    INSERT INTO iam_policies (resource, updated_by)
    SELECT 'models/' || m.name, 'system:modelreg' FROM registered_models m
    WHERE m.created_by <> 'system:modelreg'
    ON CONFLICT (resource) DO NOTHING
    RETURNING resource
)
INSERT INTO iam_bindings (resource, role, member)
SELECT c.resource, 4, 'user:' || m.created_by
FROM created c JOIN registered_models m ON 'models/' || m.name = c.resource;
