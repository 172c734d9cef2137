await fetch('https://api.tansohq.com/api/v1/client/customers', {
method: 'POST',
headers: {
'Content-Type': 'application/json',
'Authorization': 'Bearer YOUR_API_KEY'
},
body: JSON.stringify({
customerReferenceId: 'cus_123',
email: '[email protected]',
firstName: 'Jane',
lastName: 'Smith',
})
})
