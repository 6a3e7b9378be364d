-- The books behind the accounting reports: every record that moves money, as a double-entry
-- transaction on the business's chart of accounts (its ledger accounts). Computed on request from the
-- records as they are, and kept until a request changes data (state.writes), so a report never
-- disagrees with the records the API answers.
--   invoice (sent, not deleted)  Dr Accounts Receivable  Cr Sales             on its create_date
--   payment                      Dr Cash                 Cr Accounts Receivable on its date
--   paid but no payment record   Dr Cash                 Cr Accounts Receivable on date_paid's day rule
--   expense                      Dr the first non-system expense account  Cr Cash   on its date
--   other income                 Dr Cash                 Cr Sales             on its date
--   bill                         Dr the expense account  Cr Accounts Payable  on its issue_date
--   bill payment                 Dr Accounts Payable     Cr Cash              on its paid_date
--   journal entry (manual)       each detail on the account its sub_accountid names, on user_entered_date
-- Each transaction carries its currency; a report in one currency sums that currency's transactions
-- (so every currency's books balance on their own). Amounts are pre-tax, as the records' amounts are.
local state = require "sandbox.state"
local util = require "sandbox.util"
local data = require "sandbox.data"
local NULL = require("sandbox.json").null

local books = {}

-- The accounts each kind of posting goes to, found by their system account names (which FreshBooks
-- never lets change) and, for expenses, the first expense account that is not a system one.
function books.roles(ledger)
  local r = {}
  for _, a in ipairs(ledger.list) do
    if a.system_account_name and not a.parent_account then r[a.system_account_name] = a end
    if a.type == "expense" and not a.system_account_name and not a.parent_account and not r.expense then
      r.expense = a
    end
  end
  r.expense = r.expense or r["Cost of Goods Sold"]
  return r
end

-- A ledger account's id where reports answer integer ids (the trial balance's sub_accountid): its place
-- in the chart plus LEDGER_ID0. A journal entry may name it as its sub_accountid.
local LEDGER_ID0 = 300000
function books.ledger_id(ledger, a)
  for i, x in ipairs(ledger.list) do if x == a then return LEDGER_ID0 + i end end
end

-- A manual journal entry's sub_accountid names a journal entry account (or one of its sub accounts):
-- the ledger account with that account's number takes the posting; an unknown one, the expense account.
-- (The ledger id of books.ledger_id names its account directly.)
local function je_account(acct, ledger, roles, sub_accountid)
  local id = tonumber(sub_accountid)
  if id and id > LEDGER_ID0 and ledger.list[id - LEDGER_ID0] then return ledger.list[id - LEDGER_ID0] end
  local number
  for _, a in ipairs(acct.cols.journal_entry_accounts.list) do
    if a.id == id then number = a.account_number end
    for _, s in ipairs(a.sub_accounts or {}) do
      if s.sub_accountid == id or s.id == id then number = a.account_number end
    end
  end
  for _, a in ipairs(ledger.list) do
    if number and a.number == number and not a.parent_account then return a end
  end
  return roles.expense
end

-- The day a paid amount without a payment record was collected: the invoice's date_paid rule (12 days
-- after its date), never after the seeded books' today unless the invoice itself is later.
local function unrecorded_day(inv_day)
  return math.min(inv_day + 12, math.max(inv_day, data.TODAY))
end
books.unrecorded_day = unrecorded_day

local cache = setmetatable({}, { __mode = "k" })

local function build(acct)
  local b = acct.business
  local ledger = state.data.businesses[b.id].ledger
  local roles = books.roles(ledger)
  local cols, home = acct.cols, acct.currency_code
  local cash, ar, ap, sales, expense = roles.Cash, roles["Accounts Receivable"], roles["Accounts Payable"],
    roles.Sales, roles.expense
  local out, seq = {}, 0
  local function add(t, legs)
    seq = seq + 1
    t.seq, t.legs = seq, legs
    out[#out + 1] = t
    return t
  end
  local function client_name(id)
    local c = cols.clients.by_id[tonumber(id)]
    return c and c.organization ~= "" and c.organization or nil
  end
  local posted, collected = {}, {}
  for _, inv in ipairs(cols.invoices.list) do
    if not inv.removed and inv.vis_state ~= 1 and inv.status ~= 1 then
      posted[inv.id] = inv
      local amount = inv.amount
      if amount ~= 0 then
        add({ day = inv[3], code = inv.currency_code, kind = "invoice", invoiceid = inv.id,
              clientid = inv.customerid, client = client_name(inv.customerid), reference = inv.invoice_number,
              description = "Invoice " .. inv.invoice_number },
            { { ar, amount, 0 }, { sales, 0, amount } })
      end
    end
  end
  for _, pay in ipairs(cols.payments.list) do
    local inv = posted[tonumber(pay.invoiceid)]
    local day = util.parse_date(pay.date)
    if inv and day and not pay.removed and pay.vis_state ~= 1 and (pay.amount or 0) ~= 0 then
      collected[inv.id] = (collected[inv.id] or 0) + pay.amount
      add({ day = day, code = inv.currency_code, kind = "payment", paymentid = pay.id, invoiceid = inv.id,
            clientid = inv.customerid, client = client_name(inv.customerid), method = pay.type,
            reference = inv.invoice_number, description = "Payment for invoice " .. inv.invoice_number },
          { { cash, pay.amount, 0 }, { ar, 0, pay.amount } })
    end
  end
  for id, inv in pairs(posted) do
    local rest = inv.paid - (collected[id] or 0)
    if rest > 0 then
      add({ day = unrecorded_day(inv[3]), code = inv.currency_code, kind = "payment", invoiceid = id,
            clientid = inv.customerid, client = client_name(inv.customerid), reference = inv.invoice_number,
            description = "Payment for invoice " .. inv.invoice_number },
          { { cash, rest, 0 }, { ar, 0, rest } })
    end
  end
  for _, e in ipairs(cols.expenses.list) do
    local day = util.parse_date(e.date)
    if day and not e.removed and e.vis_state ~= 1 and (e.amount or 0) ~= 0 then
      local cat = cols.categories.by_id[tonumber(e.categoryid)]
      add({ day = day, code = e.currency_code or home, kind = "expense", expenseid = e.id,
            categoryid = cat and cat.id, category = cat and cat.category, clientid = tonumber(e.clientid),
            client = client_name(e.clientid), reference = e.vendor ~= NULL and e.vendor or nil,
            description = (type(e.notes) == "string" and e.notes ~= "") and e.notes or (cat and cat.category) },
          { { expense, e.amount, 0 }, { cash, 0, e.amount } })
    end
  end
  for _, oi in ipairs(cols.other_incomes.list) do
    local day = util.parse_date(oi.date)
    if day and not oi.removed and oi.vis_state ~= 1 and (oi.amount or 0) ~= 0 then
      add({ day = day, code = oi.currency_code or home, kind = "income", incomeid = oi.id,
            reference = oi.source, description = "Other income: " .. tostring(oi.category_name or "") },
          { { cash, oi.amount, 0 }, { sales, 0, oi.amount } })
    end
  end
  local bills = {}
  for _, bill in ipairs(cols.bills.list) do
    local day = util.parse_date(bill.issue_date)
    if day and not bill.removed and bill.vis_state ~= 1 then
      bills[bill.id] = bill
      local line = type(bill.lines) == "table" and bill.lines[1]
      local cat = line and cols.categories.by_id[tonumber(line.categoryid)]
      if (bill.amount or 0) ~= 0 then
        add({ day = day, code = bill.currency_code or home, kind = "bill", billid = bill.id,
              categoryid = cat and cat.id, category = cat and cat.category, reference = bill.bill_number,
              description = "Bill " .. tostring(bill.bill_number or bill.id) },
            { { expense, bill.amount, 0 }, { ap, 0, bill.amount } })
      end
    end
  end
  for _, bp in ipairs(cols.bill_payments.list) do
    local bill = bills[tonumber(bp.billid)]
    local day = util.parse_date(bp.paid_date)
    if bill and day and not bp.removed and bp.vis_state ~= 1 and (bp.amount or 0) ~= 0 then
      local line = type(bill.lines) == "table" and bill.lines[1]
      local cat = line and cols.categories.by_id[tonumber(line.categoryid)]
      add({ day = day, code = bill.currency_code or home, kind = "bill_payment", bill_paymentid = bp.id,
            billid = bill.id, categoryid = cat and cat.id, category = cat and cat.category,
            reference = bill.bill_number, description = "Payment for bill " .. tostring(bill.bill_number or bill.id) },
          { { ap, bp.amount, 0 }, { cash, 0, bp.amount } })
    end
  end
  for _, je in ipairs(cols.journal_entries.list) do
    local day = util.parse_date(je.user_entered_date)
    if day and not je.removed and type(je.details) == "table" then
      local legs = {}
      for _, d in ipairs(je.details) do
        local a = je_account(acct, ledger, roles, d.sub_accountid)
        local dr = type(d.debit) == "string" and util.cents(d.debit) or 0
        local cr = type(d.credit) == "string" and util.cents(d.credit) or 0
        legs[#legs + 1] = { a, dr, cr, detailid = d.detailid, sub_accountid = d.sub_accountid }
      end
      add({ day = day, code = je.currency_code or home, kind = "adjustment", entryid = je.id, name = je.name,
            reference = je.name, description = je.description or "" }, legs)
    end
  end
  table.sort(out, function(x, y)
    if x.day ~= y.day then return x.day < y.day end
    return x.seq < y.seq
  end)
  return { list = out, ledger = ledger, roles = roles }
end

-- The account's books: { list = transactions in date order, ledger = the chart, roles }. Each
-- transaction: day, code, kind (entity_type), ids, client, reference, description, legs = {{account,
-- debit cents, credit cents}, ...}.
function books.of(acct)
  local c = cache[acct]
  if not c or c.writes ~= state.writes or c.data ~= state.data then
    c = { writes = state.writes, data = state.data, books = build(acct) }
    cache[acct] = c
  end
  return c.books
end

-- The account whose balance a posting to `a` lands in: itself, or its parent (one level of
-- sub-accounts).
function books.top(ledger, a)
  if a.parent_account then return ledger.by_uuid[a.parent_account] or a end
  return a
end

-- Debit-normal accounts (assets, expenses) count debit minus credit; the others credit minus debit.
function books.sign(a)
  return (a.type == "asset" or a.type == "expense") and 1 or -1
end

-- Sum of debits and credits per account over the transactions in `code` dated in [from, to] (either
-- bound nil: open). -> map account -> {dr, cr}.
function books.totals(bk, code, from, to)
  local t = {}
  for _, x in ipairs(bk.list) do
    if x.code == code and (not from or x.day >= from) and (not to or x.day <= to) then
      for _, leg in ipairs(x.legs) do
        local s = t[leg[1]]
        if not s then s = { dr = 0, cr = 0 }; t[leg[1]] = s end
        s.dr, s.cr = s.dr + leg[2], s.cr + leg[3]
      end
    end
  end
  return t
end

return books
