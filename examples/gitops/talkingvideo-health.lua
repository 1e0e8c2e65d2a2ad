-- Argo CD health check for multitalk.dev/TalkingVideo (Lua 5.1, as Argo CD runs it).
-- Healthy once the render Succeeded, Degraded when it Failed, Suspended while suspended,
-- Progressing otherwise (also while the operator has not yet seen the latest generation).
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to accept the TalkingVideo"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local function condition(kind)
  if status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == kind then
        return c
      end
    end
  end
  return nil
end

local complete = condition("Complete")
local failed = condition("Failed")
local phase = status.phase or ""

if (failed ~= nil and failed.status == "True") or phase == "Failed" then
  hs.status = "Degraded"
  local reason = (failed and failed.reason) or (status.lastFailure and status.lastFailure.reason) or "Failed"
  local message = (failed and failed.message) or (status.lastFailure and status.lastFailure.message) or ""
  hs.message = reason .. ": " .. message
  return hs
end

if (complete ~= nil and complete.status == "True") or phase == "Succeeded" then
  hs.status = "Healthy"
  local uri = status.output and status.output.uri or ""
  local engine = status.engine and status.engine.name or "?"
  hs.message = "Rendered with " .. engine .. ": " .. uri
  return hs
end

if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
  return hs
end

hs.status = "Progressing"
if phase == "Queued" then
  hs.message = "Queued: waiting for Kueue to admit the Job"
elseif status.progress ~= nil and status.progress.stage ~= nil then
  hs.message = phase .. ": " .. status.progress.stage .. " " .. tostring(status.progress.percent or 0) .. "%"
else
  hs.message = phase ~= "" and phase or "Pending"
end
return hs
