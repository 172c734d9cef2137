app.post('/api/chat', async (req, res) => {
const result = await openai.chat.completions.create(req.body)
await fetch('https://api.tansohq.com/api/v1/client/events', {
method: 'POST',
headers: {
'Content-Type': 'application/json',
'Authorization': 'Bearer YOUR_API_KEY'
},
body: JSON.stringify({
eventIdempotencyKey: crypto.randomUUID(),
eventName: 'chat_completion',
customerReferenceId: req.userId,
featureKey: 'ai_chat',
costInput: {
model: 'gpt-4o',
modelProvider: 'openai',
},
usageUnits: result.usage.total_tokens,
costAmount: result.usage.total_tokens * 0.00003, // override with your negotiated rate
revenueAmount: 0.05,
})
})
res.json(result)
})
