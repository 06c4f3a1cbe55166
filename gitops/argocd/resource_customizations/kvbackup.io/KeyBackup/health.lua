-- Health of a kvbackup.io KeyBackup, from the kstatus conditions its operator writes:
-- Ready, Reconciling and Stalled, each stamped with the generation it describes.
-- Written for Lua without its standard libraries (argocd-cm's default): no string.*.
local hs = {}

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "KeyBackup is suspended: no scheduled run until spec.suspend is false"
  return hs
end

local generation = obj.metadata.generation
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

-- A condition stamped with an older generation says nothing about the current spec.
local function current(conditionType)
  for _, condition in ipairs(status.conditions or {}) do
    if condition.type == conditionType and
        (condition.observedGeneration == nil or condition.observedGeneration == generation) then
      return condition
    end
  end
  return nil
end

local stalled = current("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or stalled.reason
  return hs
end
local reconciling = current("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message or reconciling.reason
  return hs
end
local ready = current("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition of generation " .. generation
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
hs.message = ready.message or ready.reason
return hs
