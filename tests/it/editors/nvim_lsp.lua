-- Neovim's built-in LSP client (0.7+) against `push lsp` and a live node: initialize,
-- completion, hover and executeCommand push.eval. Run headless by tests/it/lsp.rs with
-- PUSH_BIN, PUSH_APP (an app dir) and PUSH_ADDR/PUSH_TOKEN (read by `push lsp` itself).
-- Prints "nvim: all checks passed" and quits; any failure exits non-zero (cq).

local function fail(msg)
  io.stderr:write("nvim FAIL: " .. tostring(msg) .. "\n")
  vim.cmd("cq")
end

local function main()
  local bin = assert(os.getenv("PUSH_BIN"), "PUSH_BIN")
  local root = assert(os.getenv("PUSH_APP"), "PUSH_APP")
  local status = nil
  local id = vim.lsp.start_client({
    name = "push",
    cmd = { bin, "lsp" },
    root_dir = root,
    handlers = {
      ["push/status"] = function(_, result) status = result end,
    },
  })
  if not id then return fail("start_client returned nil") end
  local client = vim.lsp.get_client_by_id(id)
  if not vim.wait(20000, function() return status ~= nil and status.connected end, 50) then
    return fail("no connected push/status: " .. vim.inspect(status))
  end
  if not client.server_capabilities.executeCommandProvider then
    return fail("no executeCommandProvider: " .. vim.inspect(client.server_capabilities))
  end

  vim.cmd("edit " .. root .. "/scratch.py")
  local buf = vim.api.nvim_get_current_buf()
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { "import push", "q = push.kv('x').ca" })
  vim.lsp.buf_attach_client(buf, id)
  local uri = vim.uri_from_bufnr(buf)

  local r = client.request_sync("textDocument/completion",
    { textDocument = { uri = uri }, position = { line = 1, character = 19 } }, 10000, buf)
  if not r or r.err then return fail("completion: " .. vim.inspect(r)) end
  local items = r.result.items or r.result
  local labels = {}
  for _, item in ipairs(items) do labels[item.label] = true end
  if not labels["cas"] then return fail("no 'cas' in completion: " .. vim.inspect(items)) end

  r = client.request_sync("textDocument/hover",
    { textDocument = { uri = uri }, position = { line = 1, character = 10 } }, 10000, buf)
  if not r or r.err or not r.result then return fail("hover: " .. vim.inspect(r)) end
  if not string.find(r.result.contents.value, "push.kv", 1, true) then
    return fail("hover text: " .. vim.inspect(r.result))
  end

  r = client.request_sync("workspace/executeCommand",
    { command = "push.eval", arguments = { { uri = uri, code = "6 * 7" } } }, 10000, buf)
  if not r or r.err or r.result.value ~= "42" then return fail("push.eval: " .. vim.inspect(r)) end

  r = client.request_sync("workspace/executeCommand",
    { command = "push.eval", arguments = { { uri = uri, position = { line = 0, character = 3 } } } },
    10000, buf)
  if not r or r.err or r.result.ok ~= true then return fail("push.eval position: " .. vim.inspect(r)) end

  print("nvim: all checks passed (completion " .. #items .. " items, eval 6 * 7 = 42)")
  io.stdout:write("nvim: all checks passed\n")
  client.stop()
  vim.cmd("qa!")
end

local ok, err = pcall(main)
if not ok then fail(err) end
